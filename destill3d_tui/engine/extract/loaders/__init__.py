"""One module per family of formats; :mod:`..load` picks one by detected format."""
