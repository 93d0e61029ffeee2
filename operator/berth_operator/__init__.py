"""berth's Kopf operator: reconciles InferenceDeployment resources into GPU workloads."""
