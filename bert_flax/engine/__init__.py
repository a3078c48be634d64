"""The training engine: the train state and pure steps (step.py), jit/sharding and the pmap mode
(parallel.py, pmap.py), the optimizer (optim.py), Orbax checkpoints (checkpoint.py), host-batch
prefetching (prefetch.py), stop signals (preemption.py) and the step loop both trainers share (loop.py)."""
