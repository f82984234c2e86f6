"""Pair generation from raw videos: video perturbations (video.py, with the ops in
mmalign.data.video_ops), text edits with spans (inject.py, diff.py), APASI self-injection
(self_inject.py), OSPO object negatives (objects.py), the RRPO release format
(rrpo_format.py), and the sharded, resumable runner behind `mmalign pairs` (run.py, cli.py)."""
