"""Outbound lab orders: ServiceRequest → ORM^O01 / OML^O21 over MLLP, with a Task recording the delivery."""
