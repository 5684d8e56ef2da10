"""Measuring a trained model: face -> frame -> video aggregation, metrics and calibration, the evaluation on
the validation and test splits, figures and the model card."""
