"""Hosted engines: video models behind a provider's job API (Veo, Runway, Luma, Kling,
fal, Replicate). Each module talks to one provider through its official client where
there is one; `base` holds what they share (durable jobs, retries, downloads)."""

from .base import HostedEngine, HostedSettings, Job, JobStatus

__all__ = ["HostedEngine", "HostedSettings", "Job", "JobStatus"]
