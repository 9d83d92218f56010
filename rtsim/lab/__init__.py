"""What the notebooks need beyond ``rtsim.sim`` and ``rtsim.live``: widgets, plots, ledgers."""
