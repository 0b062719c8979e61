"""netralitas: model package."""
