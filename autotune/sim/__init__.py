"""A simulated SGLang engine: step-by-step scheduler model timed by measured kernel data.

Everything this package reports is simulated and must be labelled so where it appears.
"""
