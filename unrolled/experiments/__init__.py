"""Experiments of the lectures, run end to end: can a cell count (:mod:`.counting`, Weiss et al.
2018), and which parts of the LSTM matter (:mod:`.ablation`, Greff et al. 2017). Each writes its
results into a folder as it goes (:mod:`.study`), so a killed study continues where it stopped."""
