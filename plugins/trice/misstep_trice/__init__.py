"""misstep-trice: TRICE for misstep: stage-I data, execution-feedback ranking and the RRHF loss."""
