"""Tools around the worker, not on its event path: the traffic simulator, the
HTML report of a backtest and ``tocsin demo``."""
