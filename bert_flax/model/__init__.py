"""The model: transformers' FlaxBertForPreTraining and this project's fast impl on the same tree
(pretraining.py, fast_bert.py), its MLM/NSP losses as a Task (losses.py), the head classes a
checkpoint can hold (architectures.py) and the FLOP count of a step (flops.py)."""
