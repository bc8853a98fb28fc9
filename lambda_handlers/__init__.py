"""gradekit.lambda_handlers: AWS Lambda reward handlers for Bedrock RFT (being built)."""
