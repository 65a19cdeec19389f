"""What a prompt may name and send: the model folders and the files they list (paths), and the checks every input
gets when a prompt is posted, before anything is queued or loaded (checks)."""
