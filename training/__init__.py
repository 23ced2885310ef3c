"""Training pipeline: data preparation, losses, the teacher (mediapipe landmarks) and the trainer.

Kept apart from `models/` so inference code never imports training concerns.
"""
