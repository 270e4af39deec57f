// SPDX-License-Identifier: MIT
#include "NpcConversationComponent.h"

#include "AudioCaptureCore.h"
#include "Components/AudioComponent.h"
#include "Containers/Queue.h"
#include "IWebSocket.h"
#include "NpcConversation.h"
#include "NpcHandshake.h"
#include "NpcPcm.h"
#include "NpcReplyWave.h"
#include "NpcRuntimeLog.h"
#include "WebSocketsModule.h"

namespace
{
std::string ToUtf8(const FString& S)
{
	FTCHARToUTF8 Conv(*S);
	return std::string(Conv.Get(), Conv.Length());
}

FString FromUtf8(const std::string& S)
{
	FUTF8ToTCHAR Conv(S.data(), static_cast<int32>(S.size()));
	return FString(Conv.Length(), Conv.Get());
}

npc::Scene ToCore(const FNpcScene& In)
{
	auto List = [](const TArray<FNpcSceneEntity>& Entities) {
		std::vector<npc::Entity> Out;
		for (const FNpcSceneEntity& E : Entities)
		{
			Out.push_back(npc::Entity{ToUtf8(E.Id), ToUtf8(E.Name), ToUtf8(E.Description)});
		}
		return Out;
	};
	npc::Scene Scene;
	Scene.name = ToUtf8(In.Name);
	Scene.objects = List(In.Objects);
	Scene.locations = List(In.Locations);
	Scene.characters = List(In.Characters);
	for (const FNpcVerb& V : In.Verbs)
	{
		npc::VerbDef Def{ToUtf8(V.Name), ToUtf8(V.Description), {}};
		for (const FNpcVerbArg& A : V.Args)
		{
			npc::VerbArg Arg;
			Arg.name = ToUtf8(A.Name);
			switch (A.Type)
			{
				case ENpcVerbArgType::Location: Arg.type = "location"; break;
				case ENpcVerbArgType::Character: Arg.type = "character"; break;
				case ENpcVerbArgType::Any: Arg.type = "any"; break;
				case ENpcVerbArgType::Values:
					for (const FString& W : A.Values) { Arg.values.push_back(ToUtf8(W)); }
					break;
				default: Arg.type = "object"; break;
			}
			Def.args.push_back(MoveTemp(Arg));
		}
		Scene.verbs.push_back(MoveTemp(Def));
	}
	return Scene;
}
}  // namespace

/** Frames received by the socket's callbacks (any thread), handled in TickComponent. Shared with the
 *  callbacks, so a late callback after EndPlay writes into a live queue, never into a dead component. */
struct UNpcConversationComponent::FInbox
{
	struct FFrame
	{
		bool bBinary = false;
		bool bClosed = false;
		FString Text;
		TArray<uint8> Bytes;
		bool bConnectionError = false;  // the connection failed or the handshake was refused (Text: the backend's words)
	};
	TQueue<FFrame, EQueueMode::Mpsc> Frames;
	TArray<uint8> Partial;  // binary fragments (only touched by the socket's callback thread)
};

/** The default capture device, forwarding float blocks to the game thread. */
struct FNpcMicrophone
{
	Audio::FAudioCapture Capture;
	struct FBlock { TArray<float> Samples; int32 Channels = 1; int32 Rate = 48000; };
	TQueue<FBlock, EQueueMode::Spsc> Blocks;  // audio thread -> game thread
};

UNpcConversationComponent::UNpcConversationComponent()
{
	PrimaryComponentTick.bCanEverTick = true;
	PrimaryComponentTick.TickGroup = TG_PrePhysics;
}

UNpcConversationComponent::~UNpcConversationComponent() = default;

void UNpcConversationComponent::BeginPlay()
{
	Super::BeginPlay();
	if (bAutoConnect)
	{
		Connect();
	}
}

void UNpcConversationComponent::EndPlay(const EEndPlayReason::Type Reason)
{
	StopMicrophone();
	Disconnect();
	Super::EndPlay(Reason);
}

void UNpcConversationComponent::Connect()
{
	Disconnect();
	Core = std::make_unique<npc::Conversation>();
	Inbox = MakeShared<FInbox, ESPMode::ThreadSafe>();
	Segments.Reset();
	bReady = false;

	TMap<FString, FString> UpgradeHeaders;
	if (!AccessToken.IsEmpty())
	{
		const std::string Token = ToUtf8(AccessToken);
		if (!npc::IsValidAccessToken(Token))
		{
			UE_LOG(LogNpcRuntime, Error, TEXT("npc_runtime: AccessToken is not printable ASCII without spaces; not connecting"));
			OnServerError.Broadcast(TEXT("invalid_token"), TEXT("AccessToken is not printable ASCII without spaces"), false, true);
			return;
		}
		UpgradeHeaders.Add(TEXT("Authorization"), FromUtf8(npc::BearerAuthorization(Token)));
	}
	Socket = FWebSocketsModule::Get().CreateWebSocket(ServerUrl, FString(), UpgradeHeaders);
	TWeakPtr<FInbox, ESPMode::ThreadSafe> WeakInbox = Inbox;
	Socket->OnMessage().AddLambda([WeakInbox](const FString& Text) {
		if (auto In = WeakInbox.Pin()) { In->Frames.Enqueue(FInbox::FFrame{false, false, Text, {}}); }
	});
	Socket->OnBinaryMessage().AddLambda([WeakInbox](const void* Data, SIZE_T Size, bool bIsLastFragment) {
		auto In = WeakInbox.Pin();
		if (!In) { return; }
		In->Partial.Append(static_cast<const uint8*>(Data), static_cast<int32>(Size));
		if (bIsLastFragment)
		{
			In->Frames.Enqueue(FInbox::FFrame{true, false, FString(), MoveTemp(In->Partial)});
			In->Partial.Reset();
		}
	});
	Socket->OnConnectionError().AddLambda([WeakInbox](const FString& Error) {
		if (auto In = WeakInbox.Pin()) { In->Frames.Enqueue(FInbox::FFrame{false, true, Error, {}, true}); }
	});
	Socket->OnClosed().AddLambda([WeakInbox](int32 Code, const FString& Reason, bool) {
		if (auto In = WeakInbox.Pin()) { In->Frames.Enqueue(FInbox::FFrame{false, true, FString::Printf(TEXT("%d %s"), Code, *Reason), {}}); }
	});
	Socket->OnConnected().AddWeakLambda(this, [this]() {
		npc::SessionStartParams Params;
		Params.character = ToUtf8(Character);
		Params.player_id = ToUtf8(PlayerId);
		Params.player_name = ToUtf8(PlayerName);
		Params.scene = ToCore(Scene);
		const std::string Problem = npc::CheckScene(Params.scene);
		if (!Problem.empty())  // the server refuses it too (invalid_message); say which part, here
		{
			UE_LOG(LogNpcRuntime, Error, TEXT("npc_runtime: Scene: %s"), *FromUtf8(Problem));
		}
		Params.options.text_only = bTextOnly;
		if (Seed != 0) { Params.options.seed = Seed; }
		Params.options.audio_in_sample_rate = MicrophoneSampleRate;
		SendJson(npc::MakeSessionStart(Params, ToUtf8(NextId())));
	});
	Socket->Connect();
}

void UNpcConversationComponent::Disconnect()
{
	if (Socket.IsValid())
	{
		Socket->OnMessage().Clear();
		Socket->OnBinaryMessage().Clear();
		Socket->OnConnected().Clear();
		Socket->OnConnectionError().Clear();
		Socket->OnClosed().Clear();
		if (Socket->IsConnected()) { Socket->Close(); }
		Socket.Reset();
	}
	Inbox.Reset();
	if (Voice) { Voice->Stop(); }
	if (Wave) { Wave->Flush(); }
	bReady = false;
}

FString UNpcConversationComponent::NextId()
{
	return FString::Printf(TEXT("u%d"), ++MessageCounter);
}

void UNpcConversationComponent::SendJson(const std::string& Json)
{
	if (Socket.IsValid() && Socket->IsConnected())
	{
		Socket->Send(FromUtf8(Json));
	}
}

FString UNpcConversationComponent::SayText(const FString& Text)
{
	const FString Id = NextId();
	SendJson(npc::MakeInputText(ToUtf8(Text), ToUtf8(Id)));
	return Id;
}

void UNpcConversationComponent::SendGameEvent(const FString& Description, bool bReact)
{
	SendJson(npc::MakeGameEvent(ToUtf8(Description), bReact, ToUtf8(NextId())));
}

void UNpcConversationComponent::CancelResponse()
{
	SendJson(npc::MakeResponseCancel({}, ToUtf8(NextId())));
	if (!PlayingResponse.IsEmpty()) { StopPlayback(PlayingResponse); }
}

void UNpcConversationComponent::CommitMicrophone() { SendJson(npc::MakeAudioCommit()); }

void UNpcConversationComponent::ClearMicrophone() { SendJson(npc::MakeAudioClear()); }

void UNpcConversationComponent::SendMicrophonePcm16(const int16* Samples, int32 NumSamples)
{
	if (!bReady || !Socket.IsValid() || NumSamples <= 0) { return; }
	const std::vector<uint8_t> Bytes = npc::pcm::ToBytes(Samples, static_cast<size_t>(NumSamples));
	Socket->Send(Bytes.data(), Bytes.size(), /*bIsBinary=*/true);
}

void UNpcConversationComponent::SendMicrophoneFloat(const float* Samples, int32 NumFrames, int32 NumChannels, int32 SampleRate)
{
	const std::vector<int16_t> Mono = npc::pcm::FromFloat(Samples, static_cast<size_t>(NumFrames), NumChannels);
	const std::vector<int16_t> Out = npc::pcm::Resample(Mono.data(), Mono.size(), SampleRate, MicrophoneSampleRate);
	SendMicrophonePcm16(Out.data(), static_cast<int32>(Out.size()));
}

bool UNpcConversationComponent::StartMicrophone()
{
	if (Microphone) { return true; }
	auto Mic = std::make_unique<FNpcMicrophone>();
	FNpcMicrophone* Raw = Mic.get();
	Audio::FAudioCaptureDeviceParams Params;  // the default device, float samples
	const bool bOpened = Raw->Capture.OpenAudioCaptureStream(Params,
		[Raw](const void* Data, int32 NumFrames, int32 NumChannels, int32 SampleRate, double, bool) {
			FNpcMicrophone::FBlock Block;
			Block.Samples.Append(static_cast<const float*>(Data), NumFrames * NumChannels);
			Block.Channels = NumChannels;
			Block.Rate = SampleRate;
			Raw->Blocks.Enqueue(MoveTemp(Block));  // the audio thread never touches the socket
		}, 1024);
	if (!bOpened || !Raw->Capture.StartStream())
	{
		UE_LOG(LogNpcRuntime, Warning, TEXT("npc_runtime: could not open the default microphone"));
		return false;
	}
	Microphone = MoveTemp(Mic);
	return true;
}

void UNpcConversationComponent::StopMicrophone()
{
	if (!Microphone) { return; }
	Microphone->Capture.StopStream();
	Microphone->Capture.CloseStream();
	Microphone.reset();
}

void UNpcConversationComponent::TickComponent(float DeltaTime, ELevelTick TickType, FActorComponentTickFunction* ThisTickFunction)
{
	Super::TickComponent(DeltaTime, TickType, ThisTickFunction);
	if (Microphone)
	{
		FNpcMicrophone::FBlock Block;
		while (Microphone->Blocks.Dequeue(Block))
		{
			SendMicrophoneFloat(Block.Samples.GetData(), Block.Samples.Num() / FMath::Max(1, Block.Channels), Block.Channels, Block.Rate);
		}
	}
	if (Inbox.IsValid())
	{
		FInbox::FFrame Frame;
		while (Inbox.IsValid() && Inbox->Frames.Dequeue(Frame))
		{
			if (Frame.bClosed)
			{
				bReady = false;
				if (Frame.bConnectionError)
				{
					// A refused handshake (401 without a valid token): UE's WebSockets backends report it as a
					// connection error; libwebsockets says "HS: ws upgrade unauthorized" for 401.
					if (const std::optional<npc::HandshakeRefusal> Refusal = npc::RefusalFromConnectionError(ToUtf8(Frame.Text)))
					{
						UE_LOG(LogNpcRuntime, Error, TEXT("npc_runtime: %s"), *FromUtf8(Refusal->Describe()));
						OnServerError.Broadcast(FromUtf8(Refusal->ErrorCode()), FromUtf8(Refusal->Describe()), Refusal->retryable, true);
					}
					else
					{
						UE_LOG(LogNpcRuntime, Warning, TEXT("npc_runtime: cannot connect to %s: %s"), *ServerUrl, *Frame.Text);
					}
				}
				OnClosed.Broadcast(Frame.Text);
			}
			else if (Frame.bBinary)
			{
				HandleBinary(Frame.Bytes);
			}
			else
			{
				HandleText(Frame.Text);
			}
		}
	}
	UpdatePlayback();
}

void UNpcConversationComponent::HandleText(const FString& Text)
{
	if (!Core) { return; }
	npc::Conversation::Update U = Core->OnText(ToUtf8(Text), PlaybackMs);
	if (!U.error.empty())
	{
		UE_LOG(LogNpcRuntime, Warning, TEXT("npc_runtime protocol: %s"), *FromUtf8(U.error));
	}
	if (U.stop)  // barge-in: stop the voice now, send the last mark, fire what was reached
	{
		StopPlayback(FromUtf8(U.stop->mark.response_id));
		SendJson(npc::MakePlaybackMark(U.stop->mark.response_id, U.stop->mark.played_ms));
		for (const npc::TimelineItem& Item : U.stop->released) { Dispatch(Item); }
		OnInterrupted.Broadcast(FromUtf8(U.stop->mark.response_id));
	}
	if (!U.event || U.dropped) { return; }
	const npc::ServerEvent& E = *U.event;
	if (const auto* Ready = std::get_if<npc::SessionReady>(&E))
	{
		bReady = true;
		if (Ready->audio)
		{
			if (!Wave) { Wave = NewObject<UNpcReplyWave>(this); }
			Wave->Configure(Ready->audio->sample_rate);
		}
		OnSessionReady.Broadcast(FromUtf8(Ready->session_id), FromUtf8(Ready->character.name));
	}
	else if (const auto* Delta = std::get_if<npc::TextDelta>(&E))
	{
		OnTextDelta.Broadcast(FromUtf8(Delta->response_id), FromUtf8(Delta->text));
	}
	else if (const auto* End = std::get_if<npc::ResponseEnd>(&E))
	{
		OnResponseEnd.Broadcast(FromUtf8(End->response_id), FString(npc::EndStatusName(End->status)), FromUtf8(End->text));
	}
	else if (const auto* Partial = std::get_if<npc::TranscriptPartial>(&E))
	{
		OnTranscript.Broadcast(FromUtf8(Partial->text), false);
	}
	else if (const auto* Final = std::get_if<npc::TranscriptFinal>(&E))
	{
		OnTranscript.Broadcast(FromUtf8(Final->text), true);
	}
	else if (const auto* Error = std::get_if<npc::ErrorEvent>(&E))
	{
		OnServerError.Broadcast(FromUtf8(Error->code), FromUtf8(Error->message), Error->retryable, Error->fatal);
	}
}

void UNpcConversationComponent::HandleBinary(const TArray<uint8>& Bytes)
{
	if (!Core) { return; }
	npc::Conversation::Update U = Core->OnBinary(Bytes.GetData(), static_cast<size_t>(Bytes.Num()));
	if (!U.error.empty())
	{
		UE_LOG(LogNpcRuntime, Warning, TEXT("npc_runtime protocol: %s"), *FromUtf8(U.error));
	}
	if (!U.audio || U.dropped || !Wave) { return; }
	const FString ResponseId = FromUtf8(U.audio->response_id);
	if (Segments.Num() == 0 || Segments.Last().ResponseId != ResponseId)
	{
		Segments.Add(FSegment{ResponseId, Wave->QueuedSamples(), 0});
	}
	Wave->QueueSamples(U.audio->pcm.data(), static_cast<int32>(U.audio->pcm.size()));
	Segments.Last().NumSamples += static_cast<int64>(U.audio->pcm.size());
	if (!Voice)
	{
		Voice = NewObject<UAudioComponent>(GetOwner());
		Voice->bAutoActivate = false;
		Voice->bAutoDestroy = false;
		USceneComponent* Parent = AudioAttachParent ? AudioAttachParent.Get() : GetOwner()->GetRootComponent();
		if (Parent) { Voice->SetupAttachment(Parent); }  // else the voice plays at the world origin
		Voice->RegisterComponent();
		Voice->SetSound(Wave);
	}
	if (!Voice->IsPlaying()) { Voice->Play(); }
}

void UNpcConversationComponent::UpdatePlayback()
{
	if (!Core) { return; }
	npc::Conversation::Tick Tick = Core->AdvanceSilent();
	for (const npc::TimelineItem& Item : Tick.due) { Dispatch(Item); }
	CurrentViseme = -1;
	PlayingResponse.Reset();
	if (!Wave || Segments.Num() == 0) { return; }

	const int64 Played = Wave->PlayedSamples();
	const double Rate = static_cast<double>(Wave->GetRate());
	// Segments fully played whose response has ended: finish them (final mark, remaining items).
	while (Segments.Num() > 0 && Played >= Segments[0].FirstSample + Segments[0].NumSamples)
	{
		const std::string Rid = ToUtf8(Segments[0].ResponseId);
		if (!Core->Ended(Rid)) { break; }  // more audio of it may still come
		npc::Conversation::Tick Done = Core->FinishPlayback(Rid, 1000.0 * Segments[0].NumSamples / Rate);
		for (const npc::TimelineItem& Item : Done.due) { Dispatch(Item); }
		for (const npc::PlaybackMark& Mark : Done.marks) { SendJson(npc::MakePlaybackMark(Mark.response_id, Mark.played_ms)); }
		Segments.RemoveAt(0);
	}
	if (Segments.Num() == 0) { return; }
	const FSegment& Seg = Segments[0];
	const int64 Into = FMath::Clamp<int64>(Played - Seg.FirstSample, 0, Seg.NumSamples);
	PlaybackMs = static_cast<float>(1000.0 * Into / Rate);
	PlayingResponse = Seg.ResponseId;
	npc::Conversation::Tick Now = Core->Advance(ToUtf8(Seg.ResponseId), PlaybackMs, MarkIntervalMs);
	for (const npc::TimelineItem& Item : Now.due) { Dispatch(Item); }
	for (const npc::PlaybackMark& Mark : Now.marks) { SendJson(npc::MakePlaybackMark(Mark.response_id, Mark.played_ms)); }
	CurrentViseme = Now.mouth ? static_cast<int32>(*Now.mouth) : -1;
}

void UNpcConversationComponent::StopPlayback(const FString& ResponseId)
{
	// Flushing the wave drops all unplayed audio; in practice only the interrupted response's is queued
	// (the next response starts after the interruption). Later audio starts at the new end of the queue.
	if (Wave) { Wave->Flush(); }
	for (const FSegment& S : Segments)
	{
		if (S.ResponseId != ResponseId) { Core->Interrupt(ToUtf8(S.ResponseId), 0.0); }
	}
	Segments.Reset();
	PlayingResponse.Reset();
	CurrentViseme = -1;
}

void UNpcConversationComponent::Dispatch(const npc::TimelineItem& Item)
{
	using Kind = npc::TimelineItem::Kind;
	if (Item.kind == Kind::Emotion)
	{
		OnEmotion.Broadcast(FName(*FromUtf8(Item.emotion.emotion)));
		return;
	}
	if (Item.kind != Kind::Action) { return; }  // visemes are read through GetCurrentViseme()
	TMap<FString, FString> Args;
	for (const auto& Arg : Item.action.args) { Args.Add(FromUtf8(Arg.first), FromUtf8(Arg.second)); }
	OnAction.Broadcast(FName(*FromUtf8(Item.action.verb_name)), Args);
	const FName Object(*FromUtf8(Item.action.object));
	const FName Target(*FromUtf8(Item.action.target));
	switch (Item.action.verb)
	{
		case npc::Verb::Move: OnMove.Broadcast(Target); break;
		case npc::Verb::Grab: OnGrab.Broadcast(Object); break;
		case npc::Verb::Give: OnGive.Broadcast(Object, Target); break;
		case npc::Verb::Other: break;  // a verb the scene declared: OnAction only
	}
}
