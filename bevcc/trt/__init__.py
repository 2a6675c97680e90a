"""TensorRT's Q/DQ rules as data (rules.py, fx_ops.py) and the graph facts derived from them
(scale domains, MAC counts), read by the passes and by `bevcc lint`."""
