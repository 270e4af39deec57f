// SPDX-License-Identifier: MIT
// The reply player: a procedural sound wave fed with the server's PCM16 frames, with the audio clock
// the timeline needs (how many samples the mixer has taken so far).
#pragma once

#include "CoreMinimal.h"
#include "Sound/SoundWaveProcedural.h"

#include "NpcReplyWave.generated.h"

UCLASS()
class NPCRUNTIME_API UNpcReplyWave : public USoundWaveProcedural
{
	GENERATED_BODY()

public:
	UNpcReplyWave(const FObjectInitializer& ObjectInitializer);

	/** Sets the rate of the audio to come (session.ready.audio.sample_rate). Call before the first frame. */
	void Configure(int32 InSampleRate);

	/** Queues mono PCM16 samples (game thread). */
	void QueueSamples(const int16* Samples, int32 NumSamples);

	/** Samples queued since the start (game thread). */
	int64 QueuedSamples() const { return TotalQueuedBytes / 2; }

	/** Samples the mixer has taken so far: the audio clock (game thread; ahead of the speakers by one mixer buffer). */
	int64 PlayedSamples();

	/** Drops everything not played yet (barge-in); the clock jumps to the end of what was queued. */
	void Flush();

	int32 GetRate() const { return Rate; }

private:
	int64 TotalQueuedBytes = 0;
	int32 Rate = 22050;
};
