"""Networks (U-Net, CRF-as-RNN), losses and model bundles."""
