"""Data: the generated scenes (:mod:`zfcore.data.scenes`), folder data sets in the
ImageNet layout (:mod:`zfcore.data.folders`) and the paper's transforms
(:mod:`zfcore.data.transforms`)."""
