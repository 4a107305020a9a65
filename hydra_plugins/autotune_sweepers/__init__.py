"""autotune's Hydra sweepers (discovered by Hydra through the hydra_plugins namespace)."""
