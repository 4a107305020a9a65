# conf/ is the package autotune.conf once installed (pyproject's package-dir): Hydra
# reads it through the pkg://autotune.conf search path, from a wheel or a checkout.
