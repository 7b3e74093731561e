"""HTTP API beside the UI: PaddleX-compatible face-recognition routes and InsightFace-style /extract."""
