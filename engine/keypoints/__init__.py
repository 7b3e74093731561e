"""Human keypoint detection: person boxes and the 17 COCO keypoints (MoveNet graphs run in PyTorch)."""
