"""Turn the official archives into what zfcore reads (see book/reproducing_at_full_scale.md).

Each module is a script, run from the repository root::

    python -m data_prep.imagenet --help     # ImageNet 2012 -> ROOT/train/<wnid>/*, ROOT/val/<wnid>/*, mean
    python -m data_prep.caltech --help      # Caltech-101 / Caltech-256 -> images + 5 train/test folds
    python -m data_prep.pascal --help       # PASCAL VOC 2012 -> multi-label train and val lists
    python -m data_prep.overlap --help      # Caltech images found in ImageNet train -> exclusion list
"""
