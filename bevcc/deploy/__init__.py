"""Deployable sets: several files compiled into one directory with a report and the trtexec
script (set_compile.py, report.py, trtexec_script.py), and `bevcc evaluate`'s parity bookkeeping
(evaluation.py). Loaded only by the commands that use it, never by `import bevcc`."""
