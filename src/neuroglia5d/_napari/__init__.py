"""napari contributions (the npe2 manifest points here). Qt code stays in this package."""
