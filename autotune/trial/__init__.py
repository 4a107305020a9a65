"""One trial: a spec in, a result out — deploy → ready → benchmark → score → teardown."""
