"""Pure tensor functions shared by models, data and evaluation."""
