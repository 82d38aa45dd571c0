"""Recipes that train the course's pretrained models; each is one command that writes the weights
and their manifest entry into sdlib/weights/ (or --out). A lesson can always retrain instead.

    python -m sdlib.recipes.classifier    # the digit classifier behind sdlib.metrics
    python -m sdlib.recipes.ddpm          # the unconditional pixel-space DDPM of lesson 03

Each recipe prints what it measured; the numbers land in the manifest next to the weights.
"""
