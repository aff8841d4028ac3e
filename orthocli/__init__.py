"""orthocli: score, prune and re-initialise convolutional filters by orthogonality (RePr).

The method (docs/method.md), in five steps that the code refers to by name:

1. Acquire: read the weights of every layer (checkpoint.py) or build the model (models.py).
2. Score: every conv filter by inter-filter orthogonality (orthogonality.py, layer_scores.py).
3. Drop: move the most redundant filters into a sub-network (drops.py chooses, subnet.py masks).
4. Re-introduce: train the sub-network, then give the dropped filters new values from the null
   space of the layer's filters (subnet.py, nullspace.py) and train on.
5. Output: the network once training has converged (training.py, experiment.py).

"The patent" in comments is the patent text describing the method (claims 1-7); "the paper" is
RePr (Prakash et al., CVPR 2019).
"""

__version__ = "0.1.0"
