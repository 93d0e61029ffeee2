"""Model building blocks as small functions (torch references), each one call site the GPU build can
replace with a fused Triton kernel without touching the model code."""
