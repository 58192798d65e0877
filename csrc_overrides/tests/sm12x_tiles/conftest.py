import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "sm12x_heavy_compile: compiles SM120/SM121 CUTLASS kernels with nvcc "
        "(CPU only, ~1-3 min and ~6 GB RSS per translation unit and arch)",
    )
