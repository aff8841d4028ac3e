#!/usr/bin/env sh
# Rebuilds the shipped sample checkpoints: the paper's plain ConvNet (3 conv layers of 32 3x3
# filters, ReLU, max pooling) trained on the shipped MNIST-1D (the default data) with orthocli
# itself, by ordinary training (no RePr cycle): the kind of model a user brings to `score` and `prune`.
#   sh sample_models/make_samples.sh
set -eu
cd "$(dirname "$0")"
orthocli train --cycles 0 --seed 0 --deterministic --threads 1 -o mnist1d_convnet.pt --force
orthocli export mnist1d_convnet.pt -o mnist1d_convnet.safetensors --force
