"""Training: one loop (loop.py) running SAM (sam_task.py) or HQ-SAM (hq_task.py) as tasks, the
losses of all of samkit (losses.py) and the prompt simulation (prompts.py)."""
