"""The study around Hydra's sweep: validate, open the sweep run, team workers, close, summarize."""
