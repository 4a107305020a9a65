"""Deploy targets, one module each; all implement autotune.launcher.Launcher."""
