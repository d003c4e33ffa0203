//! The users actor: one short handler per request type, each forwarding to [`Users`].

use actix::prelude::*;
use courier_actors::{Cancelled, Request};

use crate::domain::{User, UsersError};
use crate::endpoints::{
    Authenticate, CreateUser, DeleteUser, Deleted, GetUser, ListUsers, Me, UpdateUser, UserPage,
};
use crate::users::Users;

/// Serves every users endpoint. Handlers return futures, so requests run concurrently; the
/// actor holds no state of its own beyond its dependencies. Each future runs under
/// `Request::serve`: when the bridge gives up on a request (deadline, time limit), the work is
/// dropped where it stands and an open transaction rolls back.
pub struct UsersActor(pub Users);

impl Actor for UsersActor {
    type Context = Context<Self>;
}

impl Handler<Request<CreateUser>> for UsersActor {
    type Result = ResponseFuture<Result<User, UsersError>>;
    fn handle(&mut self, req: Request<CreateUser>, _: &mut Context<Self>) -> Self::Result {
        let users = self.0.clone();
        req.serve(|body, meta| users.create(body, meta))
    }
}

impl Handler<Request<GetUser>> for UsersActor {
    type Result = ResponseFuture<Result<User, UsersError>>;
    fn handle(&mut self, req: Request<GetUser>, _: &mut Context<Self>) -> Self::Result {
        let users = self.0.clone();
        req.serve(|body, _| users.get(body))
    }
}

impl Handler<Request<ListUsers>> for UsersActor {
    type Result = ResponseFuture<Result<UserPage, UsersError>>;
    fn handle(&mut self, req: Request<ListUsers>, _: &mut Context<Self>) -> Self::Result {
        let users = self.0.clone();
        req.serve(|body, _| users.list(body))
    }
}

impl Handler<Request<UpdateUser>> for UsersActor {
    type Result = ResponseFuture<Result<User, UsersError>>;
    fn handle(&mut self, req: Request<UpdateUser>, _: &mut Context<Self>) -> Self::Result {
        let users = self.0.clone();
        req.serve(|body, meta| users.update(body, meta))
    }
}

impl Handler<Request<DeleteUser>> for UsersActor {
    type Result = ResponseFuture<Result<Deleted, UsersError>>;
    fn handle(&mut self, req: Request<DeleteUser>, _: &mut Context<Self>) -> Self::Result {
        let users = self.0.clone();
        req.serve(|body, meta| users.delete(body, meta))
    }
}

impl Handler<Request<Authenticate>> for UsersActor {
    type Result = ResponseFuture<Result<User, UsersError>>;
    fn handle(&mut self, req: Request<Authenticate>, _: &mut Context<Self>) -> Self::Result {
        let users = self.0.clone();
        req.serve(|body, _| users.authenticate(body))
    }
}

impl Handler<Request<Me>> for UsersActor {
    type Result = ResponseFuture<Result<User, UsersError>>;
    fn handle(&mut self, req: Request<Me>, _: &mut Context<Self>) -> Self::Result {
        let users = self.0.clone();
        req.serve(|_, meta| users.me(meta))
    }
}

impl From<Cancelled> for UsersError {
    fn from(_: Cancelled) -> Self {
        UsersError::DeadlinePassed
    }
}
