"""Shared test settings. Notebooks run in the quick mode unless SDLIB_QUICK says otherwise, with
MNIST from $SDLIB_MNIST_DIR when it is set (the CI points it at the shared copy)."""
import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("SDLIB_QUICK", "1")     # inherited by the notebook kernels that nbval starts
os.environ.setdefault("MPLBACKEND", "Agg")
