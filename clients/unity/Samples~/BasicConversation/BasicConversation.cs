// SPDX-License-Identifier: MIT
// Basic conversation: type or hold to talk, hear the reply, see the mouth move and the actions happen.
// Setup (see README.md next to this file): a character GameObject with NpcCharacter, NpcAudioPlayer (+ AudioSource),
// NpcVisemeDriver (its face), NpcActionDispatcher and NpcMicrophone; NpcSceneEntity on the props, places and the
// player; this script anywhere, with its fields assigned. The game's own verbs (declared on NpcCharacter.verbs, e.g.
// sit <seat: Object>, emote <gesture: wave|bow|shrug>) come to actions.onAction with their arguments by name.
using System.Text;
using NpcRuntime.Protocol;
using NpcRuntime.Unity;
using UnityEngine;

namespace NpcRuntime.Samples
{
    public sealed class BasicConversation : MonoBehaviour
    {
        public NpcCharacter character;
        public NpcMicrophone microphone;
        public NpcActionDispatcher actions;
        [Tooltip("Where the character walks to (move), holds things (grab) and what the player holds (give).")]
        public Transform characterHand;
        public Transform playerHand;
        public float walkSpeed = 1.5f;
        [Tooltip("Hold this key to talk (push-to-talk).")]
        public KeyCode talkKey = KeyCode.T;

        private readonly StringBuilder _reply = new StringBuilder();
        private string _typed = "Could you hand me the chopsticks?";
        private string _heard = "";
        private string _status = "connecting...";
        private string _lastAction = "";
        private Transform _walkTarget;

        private void OnEnable()
        {
            character.onReady.AddListener(OnReady);
            character.onTextDelta.AddListener(OnTextDelta);
            character.onTranscript.AddListener(OnTranscript);
            character.onError.AddListener(OnError);
            actions.onMove.AddListener(OnMove);
            actions.onGrab.AddListener(OnGrab);
            actions.onGive.AddListener(OnGive);
            actions.onAction.AddListener(OnAction);
        }

        private void OnDisable()
        {
            character.onReady.RemoveListener(OnReady);
            character.onTextDelta.RemoveListener(OnTextDelta);
            character.onTranscript.RemoveListener(OnTranscript);
            character.onError.RemoveListener(OnError);
            actions.onMove.RemoveListener(OnMove);
            actions.onGrab.RemoveListener(OnGrab);
            actions.onGive.RemoveListener(OnGive);
            actions.onAction.RemoveListener(OnAction);
        }

        private void OnReady() { _status = "talking to " + character.Session.Character.Name; }
        private void OnTextDelta(string text) { _reply.Append(text); }
        private void OnError(string code, string message) { _status = code + ": " + message; }

        private void OnTranscript(string text, bool final)
        {
            _heard = final ? text : text + "...";
            if (final && text.Length > 0) _reply.Length = 0; // a new reply follows
        }

        private void OnMove(string target)
        {
            var entity = NpcSceneEntity.Find(target);
            _walkTarget = entity != null ? entity.transform : null;
        }

        private void OnGrab(string objectId) { Attach(objectId, characterHand); }

        private void OnGive(string objectId, string receiverId) { Attach(objectId, playerHand); }

        /// <summary>Every action, any verb: the built-ins are handled above; the scene's own verbs here.</summary>
        private void OnAction(NpcAction action)
        {
            _lastAction = action.ToString(); // e.g. "sit seat=stool", "emote gesture=bow"
            if (action.Verb == "sit") OnMove(action.Arg("seat")); // walk to the seat (sit down: your animation)
        }

        private static void Attach(string objectId, Transform hand)
        {
            var entity = NpcSceneEntity.Find(objectId);
            if (entity == null || hand == null) return;
            entity.transform.SetParent(hand, false);
            entity.transform.localPosition = Vector3.zero;
        }

        private void Update()
        {
#if ENABLE_LEGACY_INPUT_MANAGER
            if (microphone != null && Input.GetKeyDown(talkKey)) microphone.BeginTalking();
            if (microphone != null && Input.GetKeyUp(talkKey)) microphone.EndTalking();
#endif
            if (_walkTarget != null)
            {
                var body = character.transform;
                var goal = new Vector3(_walkTarget.position.x, body.position.y, _walkTarget.position.z);
                body.position = Vector3.MoveTowards(body.position, goal, walkSpeed * Time.deltaTime);
                if ((body.position - goal).sqrMagnitude < 0.01f) _walkTarget = null;
            }
        }

        private void OnGUI()
        {
            GUILayout.BeginArea(new Rect(10, 10, 520, 300), GUI.skin.box);
            GUILayout.Label(_status);
            GUILayout.Label("You said: " + _heard);
            GUILayout.Label("Reply: " + _reply);
            GUILayout.Label("Last action: " + _lastAction);
            GUILayout.BeginHorizontal();
            _typed = GUILayout.TextField(_typed, GUILayout.Width(400));
            if (GUILayout.Button("Say") && character.IsReady)
            {
                _reply.Length = 0;
                _heard = _typed;
                character.Say(_typed);
            }
            GUILayout.EndHorizontal();
            GUILayout.Label(microphone != null ? "Hold " + talkKey + " to talk." : "No microphone component.");
            GUILayout.EndArea();
        }
    }
}
