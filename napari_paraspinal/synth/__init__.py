"""Synthetic training data that varies as real scans vary (SynthSeg-style).

:mod:`.anatomy` draws the structures of a slice at any lumbar level, :mod:`.real_shapes`
brings real multifidus and erector spinae outlines, :mod:`.render` paints tissue and label
maps on the network's frame, and :mod:`.contrast` turns tissue maps into images of random
contrast with scanner artefacts, one batch at a time.
"""
