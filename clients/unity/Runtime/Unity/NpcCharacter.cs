// SPDX-License-Identifier: MIT
using System;
using System.Collections.Generic;
using System.Threading.Tasks;
using NpcRuntime.Client;
using NpcRuntime.Protocol;
using UnityEngine;
using UnityEngine.Events;

namespace NpcRuntime.Unity
{
    [Serializable] public sealed class NpcTextEvent : UnityEvent<string> { }

    /// <summary>A transcript of the player's speech: the text, and whether it is final.</summary>
    [Serializable] public sealed class NpcTranscriptEvent : UnityEvent<string, bool> { }

    /// <summary>An error from the server: its code and message.</summary>
    [Serializable] public sealed class NpcErrorEvent : UnityEvent<string, string> { }

    /// <summary>
    /// One character to talk to: connects to <c>npc serve</c>, starts the session with the scene built from
    /// <see cref="NpcSceneEntity"/> objects, sends what the player says, and every frame drains the connection's
    /// events on the main thread: reply audio to <see cref="NpcAudioPlayer"/>, visemes to <see cref="NpcVisemeDriver"/>,
    /// actions to <see cref="NpcActionDispatcher"/> (both on the audio clock), text and transcripts to UnityEvents.
    /// The network runs on its own tasks: nothing here blocks the main thread.
    /// </summary>
    [AddComponentMenu("NPC Runtime/NPC Character")]
    public sealed class NpcCharacter : MonoBehaviour
    {
        [Header("Server")]
        public string serverUrl = "ws://127.0.0.1:8765";
        [Tooltip("Persona id on the server (a file in its characters/ folder).")]
        public string characterId = "jin";
        public bool connectOnStart = true;

        [Header("Player")]
        [Tooltip("Stable id: the character remembers conversations per player.")]
        public string playerId = "player";
        public string playerName = "Kai";

        [Header("Scene")]
        public string sceneName;
        [Tooltip("What actions may name. Empty: every enabled NpcSceneEntity in the loaded scenes.")]
        public List<NpcSceneEntity> sceneEntities = new List<NpcSceneEntity>();
        [Tooltip("The game's own verbs the character may perform here (e.g. sit <seat: Object>), besides move, grab and give. " +
                 "They come to NpcActionDispatcher.onAction with their arguments by name.")]
        public List<NpcVerb> verbs = new List<NpcVerb>();

        [Header("Session options")]
        public bool textOnly;
        [Tooltip("Sampling seed for repeatable replies; negative: none.")]
        public int seed = -1;

        [Header("Parts (optional)")]
        public NpcAudioPlayer audioPlayer;
        public NpcVisemeDriver visemeDriver;
        public NpcActionDispatcher actionDispatcher;
        [Tooltip("Most events handled per frame (the rest wait for the next frame).")]
        public int maxEventsPerFrame = 256;

        [Header("Events")]
        public UnityEvent onReady = new UnityEvent();
        [Tooltip("Each piece of the reply's text as it is generated.")]
        public NpcTextEvent onTextDelta = new NpcTextEvent();
        [Tooltip("The whole reply text when the response ends.")]
        public NpcTextEvent onReply = new NpcTextEvent();
        public NpcTranscriptEvent onTranscript = new NpcTranscriptEvent();
        [Tooltip("The face's emotion, on the audio clock (neutral, joy, anger, sadness, fear, surprise, disgust).")]
        public NpcTextEvent onEmotion = new NpcTextEvent();
        public NpcErrorEvent onError = new NpcErrorEvent();

        /// <summary>Every server event, on the main thread, before the component handles it.</summary>
        public event Action<ServerEvent> EventReceived;

        private Task _connecting;

        public NpcConnection Connection { get; private set; }
        /// <summary>For a server with auth on: the player token your game's backend signed for this player (or an API
        /// key), sent as <c>Authorization: Bearer</c> in the WebSocket handshake. Set it before <see cref="Connect"/>;
        /// it is never serialized into the scene. The server then takes the player id from the token (<see cref="playerId"/>
        /// is ignored). A refused handshake fires <see cref="onError"/> with <c>unauthorized</c> (HTTP 401).</summary>
        public string AccessToken { get; set; }
        /// <summary>The session (null until <c>session.ready</c>).</summary>
        public SessionReady Session { get; private set; }
        public bool IsReady { get { return Session != null && Connection != null && Connection.IsOpen; } }

        private void Start()
        {
            if (connectOnStart) Connect();
        }

        /// <summary>Connect and start the session (returns at once; <see cref="onReady"/> fires when it is ready).</summary>
        public void Connect()
        {
            if (Connection != null || _connecting != null) return;
            _connecting = ConnectAsync();
        }

        private async Task ConnectAsync()
        {
            try
            {
                // resumes on the main thread (Unity's SynchronizationContext)
                var connection = await NpcConnection.ConnectAsync(new Uri(serverUrl), string.IsNullOrEmpty(AccessToken) ? null : AccessToken);
                if (this == null) { connection.Dispose(); return; } // destroyed meanwhile
                Connection = connection;
                var start = new SessionStart
                {
                    Character = characterId, PlayerId = playerId,
                    PlayerName = string.IsNullOrEmpty(playerName) ? null : playerName, Scene = BuildScene(),
                    Options = new SessionOptions { TextOnly = textOnly, Seed = seed >= 0 ? (int?)seed : null },
                };
                Connection.Send(start);
            }
            catch (NpcConnectException e)
            {
                // refused handshake: 401 unauthorized (no valid token), 403, 429 too_many_connections
                Debug.LogError("NpcCharacter: " + serverUrl + ": " + e.Message, this);
                onError.Invoke(e.Code ?? (e.IsUnauthorized ? "unauthorized" : "connect_refused"), e.Message);
            }
            catch (Exception e)
            {
                Debug.LogError("NpcCharacter: cannot connect to " + serverUrl + ": " + e.Message, this);
                onError.Invoke("connect_failed", e.Message);
            }
            finally
            {
                _connecting = null;
            }
        }

        /// <summary>The scene from <see cref="sceneEntities"/> (or every enabled entity) and <see cref="verbs"/>, validated.</summary>
        public Scene BuildScene()
        {
            var scene = new Scene { Name = string.IsNullOrEmpty(sceneName) ? null : sceneName };
            var entities = sceneEntities.Count > 0 ? sceneEntities.ToArray() : FindObjectsOfType<NpcSceneEntity>();
            foreach (var e in entities)
            {
                if (e == null) continue;
                var list = e.kind == NpcEntityKind.Object ? scene.Objects : e.kind == NpcEntityKind.Location ? scene.Locations : scene.Characters;
                list.Add(e.ToSceneEntity());
            }
            foreach (var v in verbs)
                if (v != null) scene.Verbs.Add(v.ToVerbDef());
            scene.Validate();
            return scene;
        }

        /// <summary>The player says <paramref name="text"/>. Stops the reply playing now (the server interrupts it too).</summary>
        public void Say(string text)
        {
            if (!IsReady || string.IsNullOrEmpty(text)) return;
            if (audioPlayer != null) audioPlayer.Stop(); // its last playback.mark goes out first (next Update)
            SendMarksNow();
            Connection.Send(new TextInput(text));
        }

        /// <summary>Something happened in the world; with <paramref name="react"/> the character answers at once.</summary>
        public void SendGameEvent(string description, bool react)
        {
            if (IsReady) Connection.Send(new GameEvent(description, react));
        }

        /// <summary>Send the scene again (after objects appeared or went away).</summary>
        public void UpdateScene()
        {
            if (IsReady) Connection.Send(new SceneUpdate { Scene = BuildScene() });
        }

        /// <summary>Stop the character: the current response and its audio.</summary>
        public void Cancel()
        {
            if (!IsReady) return;
            if (audioPlayer != null) audioPlayer.Stop();
            SendMarksNow();
            Connection.Send(new ResponseCancel());
        }

        private void SendMarksNow()
        {
            if (audioPlayer == null) return;
            Perform(audioPlayer.Tick(), 0f);
        }

        private void Update()
        {
            if (Connection == null) return;
            ServerEvent ev;
            for (int n = 0; n < maxEventsPerFrame && Connection != null && Connection.TryDequeue(out ev); n++) Handle(ev);
            if (audioPlayer != null) Perform(audioPlayer.Tick(), Time.deltaTime);
            else if (visemeDriver != null) visemeDriver.Drive(null, 0, Time.deltaTime);
        }

        private void Handle(ServerEvent ev)
        {
            var handler = EventReceived;
            if (handler != null) handler(ev);
            if (audioPlayer != null) audioPlayer.Feed(ev);
            else PerformWithoutAudio(ev);
            if (ev is SessionReady)
            {
                Session = (SessionReady)ev;
                onReady.Invoke();
            }
            else if (ev is TextDelta) onTextDelta.Invoke(((TextDelta)ev).Text);
            else if (ev is ResponseEnd) onReply.Invoke(((ResponseEnd)ev).Text);
            else if (ev is TranscriptPartial) onTranscript.Invoke(((TranscriptPartial)ev).Text, false);
            else if (ev is TranscriptFinal) onTranscript.Invoke(((TranscriptFinal)ev).Text, true);
            else if (ev is ErrorEvent)
            {
                var err = (ErrorEvent)ev;
                Debug.LogWarning("npc " + err.Code + ": " + err.Message, this);
                onError.Invoke(err.Code, err.Message);
            }
            else if (ev is ProtocolViolation)
            {
                Debug.LogError("NpcCharacter: " + ((ProtocolViolation)ev).Exception.Message, this);
                onError.Invoke("protocol_violation", ((ProtocolViolation)ev).Exception.Message);
            }
            else if (ev is UnknownEvent) Debug.Log("NpcCharacter: ignoring unknown event " + ev.Type, this);
            else if (ev is ConnectionClosed)
            {
                var closed = (ConnectionClosed)ev;
                if (closed.Error != null) onError.Invoke("connection_lost", closed.Error.Message);
                Connection.Dispose();
                Connection = null;
                Session = null;
            }
        }

        /// <summary>Without an audio player there is no clock: actions and emotions happen when they arrive.</summary>
        private void PerformWithoutAudio(ServerEvent ev)
        {
            if (ev is ActionEvent && actionDispatcher != null) actionDispatcher.Perform((ActionEvent)ev);
            else if (ev is EmotionEvent) onEmotion.Invoke(((EmotionEvent)ev).Emotion);
        }

        private void Perform(PlaybackFrame frame, float deltaSeconds)
        {
            foreach (var cue in frame.Cues)
            {
                if (cue.Kind == CueKind.Action && actionDispatcher != null) actionDispatcher.Perform(cue.Action);
                else if (cue.Kind == CueKind.Emotion) onEmotion.Invoke(cue.Emotion.Emotion);
            }
            if (Connection != null)
                foreach (var mark in frame.Marks) Connection.Send(mark);
            if (visemeDriver != null) visemeDriver.Drive(frame.Timeline, frame.ClockMs, deltaSeconds);
        }

        private void OnDestroy()
        {
            var connection = Connection;
            Connection = null;
            if (connection != null) connection.CloseAsync().ContinueWith(_ => connection.Dispose());
        }
    }
}
