"""`bert-flax bench` and `bench-data`: the model step timed against baselines (run.py, with the
baselines' registry in baselines.py), and the input pipeline timed on its own (data_pipeline.py)."""
