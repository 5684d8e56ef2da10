"""Labelled datasets: metadata readers and label cleaning, grouping and splitting, the dataset step, and the
demo's own sample clips."""
