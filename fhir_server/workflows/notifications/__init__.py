"""Notifications (docs/notifications.md): ``CommunicationRequest`` (scheduled) → ``Communication`` (sent, with its
delivery status) through email (SMTP), SMS (HTTP gateway or Twilio) and the in-app inbox.

* ``appointments``: confirmations to the patient and the practitioner when an Appointment is booked,
  rescheduled or cancelled, and reminders before it (reacting to Appointment writes through the post-write hook).
* ``care``: follow-up reminders from CarePlan activities, medication reminders from MedicationRequest timing.
* ``dispatch``: a due CommunicationRequest becomes one Communication per channel; ``deliver`` sends each,
  retried with back-off, the outcome kept on the Communication (status, statusReason, sent).
* ``preferences``: which channels and language a recipient gets, and opt-outs.
* ``tasks``: the registered task functions, periodic sweep and post-write reactions.
"""
