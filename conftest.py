"""Test configuration shared by the library tests and nbval.

Notebooks run in quick mode under pytest: the kernels nbval starts inherit this environment.
"""
import os

os.environ.setdefault("DDPM_QUICK", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")
