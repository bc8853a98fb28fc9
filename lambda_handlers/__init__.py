"""gradekit.lambda_handlers: any grader as the AWS Lambda reward function of Amazon Bedrock RFT."""

from .events import EventError, parse_event, response_item
from .handler import bedrock_reward_handler

__all__ = ["EventError", "bedrock_reward_handler", "parse_event", "response_item"]
