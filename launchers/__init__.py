"""Deploy targets, one module each; all implement autotune.deploy.Launcher."""
