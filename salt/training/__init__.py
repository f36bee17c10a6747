"""What a fit needs beyond the network: the LightningModule, optimizers, learning-rate schedules
and starting from (or freezing) the weights of another run."""
