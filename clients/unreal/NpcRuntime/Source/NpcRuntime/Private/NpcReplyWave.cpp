// SPDX-License-Identifier: MIT
#include "NpcReplyWave.h"

UNpcReplyWave::UNpcReplyWave(const FObjectInitializer& ObjectInitializer) : Super(ObjectInitializer)
{
	NumChannels = 1;
	SetSampleRate(Rate);
	Duration = INDEFINITELY_LOOPING_DURATION;
	bLooping = false;
	SoundGroup = SOUNDGROUP_Voice;
	bCanProcessAsync = true;
}

void UNpcReplyWave::Configure(int32 InSampleRate)
{
	Rate = InSampleRate > 0 ? InSampleRate : 22050;
	SetSampleRate(Rate);
}

void UNpcReplyWave::QueueSamples(const int16* Samples, int32 NumSamples)
{
	if (NumSamples <= 0)
	{
		return;
	}
	// PCM16 little-endian, as the protocol sends it (all UE targets are little-endian).
	QueueAudio(reinterpret_cast<const uint8*>(Samples), NumSamples * 2);
	TotalQueuedBytes += static_cast<int64>(NumSamples) * 2;  // after QueueAudio: the clock never runs ahead
}

int64 UNpcReplyWave::PlayedSamples()
{
	// Only the audio thread removes bytes, so queued - available is what it has taken.
	const int64 Available = GetAvailableAudioByteCount();
	return FMath::Max<int64>(0, TotalQueuedBytes - Available) / 2;
}

void UNpcReplyWave::Flush()
{
	ResetAudio();
}
