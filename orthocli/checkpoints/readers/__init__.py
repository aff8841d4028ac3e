"""Checkpoint files read without torch (what `orthocli score` uses): a safetensors file
memory-mapped (safetensors.py), torch.save's zip archive (zip.py) and legacy pickle stream
(legacy.py), and the restricted unpickler both use (torch_pickle.py). Each is imported on its own
(`from orthocli.checkpoints.readers import zip`), only for its format: this face exports no names."""
