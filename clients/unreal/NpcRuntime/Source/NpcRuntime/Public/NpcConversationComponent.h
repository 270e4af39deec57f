// SPDX-License-Identifier: MIT
// UNpcConversationComponent: one NPC's conversation with an npc_runtime server.
//
// Add it to the NPC actor, set ServerUrl / Character / Scene, call Connect() (or tick bAutoConnect),
// then SayText() or stream the microphone (UNpcConversationComponent::SendMicrophone*). The reply's
// audio plays through an internal UAudioComponent (attach it where the mouth is with AudioAttachParent);
// actions fire when the audio reaches their at_ms: OnAction for every verb (the built-ins and the ones the
// scene declares in Scene.Verbs) with its arguments by name, and OnMove / OnGrab / OnGive; the current viseme is
// read by UNpcVisemeComponent. Network callbacks are queued and handled in TickComponent on the game
// thread; nothing here blocks.
#pragma once

#include "Components/ActorComponent.h"
#include "CoreMinimal.h"

#include <memory>

#include "NpcConversationComponent.generated.h"

class IWebSocket;
class UAudioComponent;
class UNpcReplyWave;
namespace npc { class Conversation; struct TimelineItem; }
struct FNpcMicrophone;

/** A scene entity the character may name in actions (ids: lowercase words joined by '_'). */
USTRUCT(BlueprintType)
struct NPCRUNTIME_API FNpcSceneEntity
{
	GENERATED_BODY()
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC") FString Id;
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC") FString Name;
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC") FString Description;
};

/** What a declared verb's argument names: a scene entity of a kind, or one of a closed list of words. */
UENUM(BlueprintType)
enum class ENpcVerbArgType : uint8
{
	Object,
	Location,
	Character,
	/** Any entity of the scene. */
	Any,
	/** One of Values. */
	Values
};

/** One argument of a declared verb (names: lowercase words joined by '_', at most 32 chars). */
USTRUCT(BlueprintType)
struct NPCRUNTIME_API FNpcVerbArg
{
	GENERATED_BODY()
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC") FString Name;
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC") ENpcVerbArgType Type = ENpcVerbArgType::Object;
	/** Type Values only: the words it may be (e.g. wave, bow, shrug). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC") TArray<FString> Values;
};

/** A verb of the game the character may perform (e.g. sit <seat: Object>): it fires OnAction with its arguments by
 *  name. Not move, grab or give (built in). */
USTRUCT(BlueprintType)
struct NPCRUNTIME_API FNpcVerb
{
	GENERATED_BODY()
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC") FString Name;
	/** One line for the model: what the verb does ("sits down on a seat"), at most 120 characters. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC") FString Description;
	/** At most 4, in the order the tag names them. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC") TArray<FNpcVerbArg> Args;
};

/** What actions may name, and the game's own verbs: session.start's scene. */
USTRUCT(BlueprintType)
struct NPCRUNTIME_API FNpcScene
{
	GENERATED_BODY()
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC") FString Name;
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC") TArray<FNpcSceneEntity> Objects;
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC") TArray<FNpcSceneEntity> Locations;
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC") TArray<FNpcSceneEntity> Characters;
	/** The game's own verbs in this scene (at most 32), besides the built-in move, grab and give. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC") TArray<FNpcVerb> Verbs;
};

DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FNpcSessionReadyEvent, const FString&, SessionId, const FString&, CharacterName);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FNpcMoveEvent, FName, Target);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FNpcGrabEvent, FName, Object);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FNpcGiveEvent, FName, Object, FName, Receiver);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FNpcActionEvent, FName, Verb, const TMap<FString, FString>&, Args);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FNpcEmotionEvent, FName, Emotion);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FNpcTextEvent, const FString&, ResponseId, const FString&, Text);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_ThreeParams(FNpcResponseEndEvent, const FString&, ResponseId, const FString&, Status, const FString&, Text);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FNpcTranscriptEvent, const FString&, Text, bool, bFinal);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FNpcInterruptedEvent, const FString&, ResponseId);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_FourParams(FNpcErrorEvent, const FString&, Code, const FString&, Message, bool, bRetryable, bool, bFatal);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FNpcClosedEvent, const FString&, Reason);

UCLASS(ClassGroup = (AI), meta = (BlueprintSpawnableComponent))
class NPCRUNTIME_API UNpcConversationComponent : public UActorComponent
{
	GENERATED_BODY()

public:
	UNpcConversationComponent();
	virtual ~UNpcConversationComponent() override;

	// --- Settings -----------------------------------------------------------------------------
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Connection") FString ServerUrl = TEXT("ws://127.0.0.1:8765");
	/** Persona id (a file in the server's characters/). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Connection") FString Character = TEXT("jin");
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Connection") FString PlayerId = TEXT("player");
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Connection") FString PlayerName;
	/** For a server with auth on (docs/security.md): the player token your game's backend signed for this player
	 *  (or an API key), sent as "Authorization: Bearer <token>" in the WebSocket handshake. Set it before Connect()
	 *  (turn bAutoConnect off, or set it in the owner's constructor). Transient: never saved with the level. The
	 *  server takes the player id from the token (PlayerId is ignored). A refused handshake fires OnServerError
	 *  with code "unauthorized" (HTTP 401) and bFatal, then OnClosed. */
	UPROPERTY(BlueprintReadWrite, Transient, Category = "NPC|Connection") FString AccessToken;
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Connection") FNpcScene Scene;
	/** Text and actions only: no audio, no visemes. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Connection") bool bTextOnly = false;
	/** Sampling seed (0: none), for repeatable replies while testing. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Connection") int32 Seed = 0;
	/** Rate of the PCM16 microphone audio this game sends (SendMicrophone* resample to it). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Voice") int32 MicrophoneSampleRate = 16000;
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Connection") bool bAutoConnect = true;
	/** Where the voice plays from (default: the owner's root). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Audio") TObjectPtr<USceneComponent> AudioAttachParent;
	/** Playback marks per second while a reply plays (the protocol asks for a few). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "NPC|Audio") float MarkIntervalMs = 250.f;

	// --- Events (game thread) -----------------------------------------------------------------
	UPROPERTY(BlueprintAssignable, Category = "NPC|Events") FNpcSessionReadyEvent OnSessionReady;
	/** Every action, any verb (move, grab, give, and the ones Scene.Verbs declares), with every argument by name
	 *  (give: object, target; sit: seat), fired when the reply's audio reaches its at_ms (before the typed events). */
	UPROPERTY(BlueprintAssignable, Category = "NPC|Events") FNpcActionEvent OnAction;
	/** move <target>: fired when the reply's audio reaches the action's at_ms. */
	UPROPERTY(BlueprintAssignable, Category = "NPC|Events") FNpcMoveEvent OnMove;
	UPROPERTY(BlueprintAssignable, Category = "NPC|Events") FNpcGrabEvent OnGrab;
	UPROPERTY(BlueprintAssignable, Category = "NPC|Events") FNpcGiveEvent OnGive;
	UPROPERTY(BlueprintAssignable, Category = "NPC|Events") FNpcEmotionEvent OnEmotion;
	/** Speech text as it is generated (subtitles). */
	UPROPERTY(BlueprintAssignable, Category = "NPC|Events") FNpcTextEvent OnTextDelta;
	UPROPERTY(BlueprintAssignable, Category = "NPC|Events") FNpcResponseEndEvent OnResponseEnd;
	/** The player's words: partial (bFinal false) and final transcripts. */
	UPROPERTY(BlueprintAssignable, Category = "NPC|Events") FNpcTranscriptEvent OnTranscript;
	/** Barge-in: the player talked over the reply; its audio stopped. */
	UPROPERTY(BlueprintAssignable, Category = "NPC|Events") FNpcInterruptedEvent OnInterrupted;
	/** An error event from the server, or a refused connection (code "unauthorized": HTTP 401, the token is missing,
	 *  malformed, expired or badly signed; "forbidden"; "too_many_connections", bRetryable; "connect_refused": another
	 *  status, unknown to UE's WebSockets backend). */
	UPROPERTY(BlueprintAssignable, Category = "NPC|Events") FNpcErrorEvent OnServerError;
	UPROPERTY(BlueprintAssignable, Category = "NPC|Events") FNpcClosedEvent OnClosed;

	// --- Commands -----------------------------------------------------------------------------
	UFUNCTION(BlueprintCallable, Category = "NPC") void Connect();
	UFUNCTION(BlueprintCallable, Category = "NPC") void Disconnect();
	UFUNCTION(BlueprintPure, Category = "NPC") bool IsSessionReady() const { return bReady; }
	/** The player says something (interrupts a reply in progress). Returns the message id. */
	UFUNCTION(BlueprintCallable, Category = "NPC") FString SayText(const FString& Text);
	/** Something happened in the world; bReact asks for an answer now. */
	UFUNCTION(BlueprintCallable, Category = "NPC") void SendGameEvent(const FString& Description, bool bReact);
	/** Stops the current reply (server side and playback). */
	UFUNCTION(BlueprintCallable, Category = "NPC") void CancelResponse();
	/** Push-to-talk released: end the player's turn now. */
	UFUNCTION(BlueprintCallable, Category = "NPC") void CommitMicrophone();
	/** Drops the utterance in progress. */
	UFUNCTION(BlueprintCallable, Category = "NPC") void ClearMicrophone();
	/** Microphone audio as float samples (any rate, interleaved channels): sent as PCM16 at MicrophoneSampleRate.
	 *  Call it from the game thread (UNpcMicrophone does the marshalling for the default device). */
	void SendMicrophoneFloat(const float* Samples, int32 NumFrames, int32 NumChannels, int32 SampleRate);
	/** Microphone audio already in PCM16 mono at MicrophoneSampleRate. */
	void SendMicrophonePcm16(const int16* Samples, int32 NumSamples);
	/** Opens the default capture device and streams it (AudioCaptureCore). */
	UFUNCTION(BlueprintCallable, Category = "NPC|Voice") bool StartMicrophone();
	UFUNCTION(BlueprintCallable, Category = "NPC|Voice") void StopMicrophone();

	/** The mouth shape under the audio clock: an OVR viseme index (0 = sil .. 14 = ou), or -1 at rest. */
	UFUNCTION(BlueprintPure, Category = "NPC") int32 GetCurrentViseme() const { return CurrentViseme; }
	/** The response whose audio is playing ("" when silent) and its clock in ms. */
	UFUNCTION(BlueprintPure, Category = "NPC") FString GetPlayingResponse() const { return PlayingResponse; }
	UFUNCTION(BlueprintPure, Category = "NPC") float GetPlaybackMs() const { return PlaybackMs; }

	virtual void BeginPlay() override;
	virtual void EndPlay(const EEndPlayReason::Type Reason) override;
	virtual void TickComponent(float DeltaTime, ELevelTick TickType, FActorComponentTickFunction* ThisTickFunction) override;

private:
	struct FInbox;  // frames from the socket's callbacks, drained on the game thread
	struct FSegment { FString ResponseId; int64 FirstSample = 0; int64 NumSamples = 0; };

	void HandleText(const FString& Text);
	void HandleBinary(const TArray<uint8>& Bytes);
	void Dispatch(const npc::TimelineItem& Item);
	void UpdatePlayback();
	void StopPlayback(const FString& ResponseId);
	void SendJson(const std::string& Json);
	FString NextId();

	TSharedPtr<IWebSocket> Socket;
	TSharedPtr<FInbox, ESPMode::ThreadSafe> Inbox;
	std::unique_ptr<npc::Conversation> Core;
	std::unique_ptr<FNpcMicrophone> Microphone;

	UPROPERTY(Transient) TObjectPtr<UNpcReplyWave> Wave;
	UPROPERTY(Transient) TObjectPtr<UAudioComponent> Voice;

	TArray<FSegment> Segments;  // the queued audio, per response, in play order
	FString PlayingResponse;
	float PlaybackMs = 0.f;
	int32 CurrentViseme = -1;
	int32 MessageCounter = 0;
	bool bReady = false;
};
