"""The practical digital baseline: an image codec over 5G NR LDPC and QAM."""
