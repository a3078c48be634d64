"""The NumPy pre-training data pipeline: corpus → sentences → NSP pairs → dynamic MLM masking."""
