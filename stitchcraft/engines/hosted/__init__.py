"""Hosted engines: video models behind a provider's job API (Veo, Runway, Luma, Kling,
fal, Replicate), and image models for keyframes at the same providers (Imagen, Runway,
Luma, fal, Replicate). Each module talks to one provider through its official client
where there is one; `base` holds what they share (durable jobs, retries, downloads), and
`images` what the image engines add on top of their provider's video engine."""

from .base import HostedEngine, HostedSettings, Job, JobStatus

__all__ = ["HostedEngine", "HostedSettings", "Job", "JobStatus"]
