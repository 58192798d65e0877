"""Tooling for the flashinfer-sm12x patch series: pin, apply, export, check, rebase, PR, wheels."""
